"""Training: two-phase transfer learning on one device or many machines, one tf.distribute loop for all.

Modules, in the order a run uses them: :mod:`.cluster` (the strategy), :mod:`.inputs` (data, shards, streams),
:mod:`.recipe` (the recipe: phases), :mod:`.setup` (what the stages of one command share), :mod:`.loop` (the
custom loop), :mod:`.schedules` (rates, stopping), :mod:`.sums` (additive metrics across workers),
:mod:`.validation` (validation passes, features), :mod:`.finish` (calibration, domain, model card).
"""

from fakedetect.training.finish import TrainResult, calibrate_on_validation, fit_domain_model
from fakedetect.training.inputs import feature_stream, image_stream, prepare_data
from fakedetect.training.recipe import preflight, resume_training, train

__all__ = ["TrainResult", "calibrate_on_validation", "feature_stream", "fit_domain_model", "image_stream",
           "preflight", "prepare_data", "resume_training", "train"]
