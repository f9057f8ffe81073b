"""The models: a backbone from the registry (:mod:`.registry`, :mod:`.efficientnet_lite`, weights in
:mod:`.lite_weights` and :mod:`.torch_checkpoint`), and the classifier on top of it (:mod:`.classifier`).

The classifier's layer names, which scoring, training and export look layers up by, and the shape of the NPR
network (which the registry reads without building it) live here (no Keras import).
"""

BACKBONE_LAYER = "backbone"
POOL_LAYER, DROPOUT_LAYER, OUTPUT_LAYER = "head_pool", "head_dropout", "head_prob"

# (blocks, bottleneck width, stride) of NPR's two stages, ResNet-50's layer1 and layer2 (see npr.py).
NPR_STAGES = ((3, 64, 1), (4, 128, 2))
