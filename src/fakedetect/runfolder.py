"""The layout of every folder fakedetect writes: each file of a run folder and of an evaluation folder, named
once, with the module that writes it. Everyone else imports these names; no file name is written twice.
"""

from __future__ import annotations

# --- a run folder (`fakedetect train --out RUN`) ------------------------------------------------------------------
MODEL_FILE = "model.keras"  # training/finish.py: the model (Keras format, loaded in safe mode by run.load_run)
CARD_FILE = "model.json"  # card.ModelCard.write: everything the run says about its model
DOMAIN_FILE = "domain.npz"  # domain.DomainModel.save, fitted by training/finish.py: the training domain
HASHES_FILE = "data_hashes.npz"  # training/recipe.py: content ids of the training and validation images
CONFIG_FILE = "config.yaml"  # training/recipe.py: the resolved training config (what --resume reads)
STATE_FILE = "state.json"  # training/recipe.py and training/loop.py: where a killed run resumes from
HISTORY_FILE = "history.csv"  # training/loop.py: one row per epoch
SKIPPED_FILE = "skipped.txt"  # training/recipe.py: unreadable files, one "path<TAB>reason" line each
CURVES_FILE = "training_curves.png"  # training/finish.py: loss and metrics per epoch
CHECKPOINTS_DIR = "checkpoints"  # training/loop.py: tf.train.Checkpoint per epoch, removed when the run is done
LOGS_DIR = "logs"  # training/loop.py: TensorBoard summaries

#: The files a finished run may hold (what --overwrite replaces; the folders above are removed with them).
RUN_FILES = (MODEL_FILE, CARD_FILE, HISTORY_FILE, STATE_FILE, CONFIG_FILE, SKIPPED_FILE, HASHES_FILE, CURVES_FILE,
             DOMAIN_FILE)

# --- an evaluation folder (`fakedetect evaluate`; evaluation/evaluate.py writes each) --------------------------------
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
REPORT_FILE = "report.html"  # evaluation/report.py (cross.py writes one of its own into a compare folder)
CLASSIFICATION_REPORT_TXT = "classification_report.txt"
CLASSIFICATION_REPORT_JSON = "classification_report.json"
#: Plot name -> file (plots.py draws them); the evaluation folder copies the run's CURVES_FILE plot too.
PLOT_FILES = {**{name: f"{name}.png" for name in
                 ("confusion_matrix", "roc_curve", "pr_curve", "reliability", "score_histogram")},
              "training_curves": CURVES_FILE}
# evaluation folder's SKIPPED_FILE: as in a run folder.

# --- a robustness folder (`fakedetect robustness`; evaluation/robustness.py) ------------------------------------------
ROBUSTNESS_CSV = "robustness.csv"
ROBUSTNESS_JSON = "robustness.json"
ROBUSTNESS_PLOT = "robustness.png"

# --- a compare folder (`fakedetect compare` / `evaluate --data A --data B`; evaluation/cross.py) ----------------------
CROSS_CSV = "cross.csv"
CROSS_MD = "cross.md"
CROSS_JSON = "cross.json"
CROSS_PLOT = "cross.png"

# --- an export (`fakedetect export`; export.py) ----------------------------------------------------------------------
EXPORT_SIDECAR_IN_FOLDER = "fakedetect.json"  # beside a saved_model folder's contents; a file export gets NAME.json
