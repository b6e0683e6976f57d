"""OneGAN (Benny & Wolf, ECCV 2020) in Keras 3 / TensorFlow (README.md, docs/).

Importing the package turns on TensorFlow's oneDNN CPU kernels unless the environment already
says (TF_ENABLE_ONEDNN_OPTS): TensorFlow turns them on by itself only on CPUs with AVX-512
VNNI / BF16 or AMX, and elsewhere (AVX2 alone) its default convolution gradients made a
training step 1.9-2.3 times slower (docs/results.md, "Speed"). It takes effect where
TensorFlow is imported after this package, as in every `python -m onegan_tf.*` command;
TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's default kernels.
"""

import os

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
os.environ.setdefault(ONEDNN_VARIABLE, "1")  # before TensorFlow loads
