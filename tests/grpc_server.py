"""A stand-in TF Serving PredictionService for the tests (the real `tensorflow_model_server`
binary cannot be installed here): answers `Predict` by running an exported SavedModel through
`onegan_tf.serving.client.ServedModel`. Not a production server."""

from __future__ import annotations

import tensorflow as tf

from onegan_tf.serving.client import ServedModel


def prediction_servicer(model_dir, model_name: str):
    """A gRPC `tensorflow.serving.PredictionService` that answers `Predict` by running the
    SavedModel's signatures: the client side of TF Serving, testable where the real
    `tensorflow_model_server` binary cannot be installed. Not a production server."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    model = ServedModel(model_dir)

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802  (the gRPC method name)
            if request.model_spec.name != model_name:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"Servable not found for request: {request.model_spec.name}")
            signature = request.model_spec.signature_name or "serving_default"
            try:
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                outputs = model(signature, **inputs)
            except (ValueError, tf.errors.OpError) as error:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = model_name
            response.model_spec.signature_name = signature
            for key in request.output_filter or outputs:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
            return response

    return Servicer()


def start_grpc_server(model_dir, model_name: str, address: str = "127.0.0.1:0"):
    """-> (grpc server started on address, its port). Stop it with server.stop(None)."""
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        prediction_servicer(model_dir, model_name), server)
    port = server.add_insecure_port(address)
    server.start()
    return server, port
