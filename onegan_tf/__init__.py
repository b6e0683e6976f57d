"""OneGAN (Benny & Wolf, ECCV 2020) in Keras 3 / TensorFlow (README.md, docs/).

Importing the package turns on TensorFlow's oneDNN CPU kernels unless the environment already
says (TF_ENABLE_ONEDNN_OPTS): TensorFlow turns them on by itself only on CPUs with AVX-512
VNNI / BF16 or AMX, and elsewhere (AVX2 alone) its default convolution gradients made a
training step 1.8-2.3 times slower (docs/speed.md). It takes effect where
TensorFlow is imported after this package, as in every `python -m onegan_tf.*` command;
TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's default kernels.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # before TensorFlow loads
