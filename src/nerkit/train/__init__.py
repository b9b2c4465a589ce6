"""Training on Accelerate: AdamW, warm-up + linear decay, clipping, accumulation, mixed precision, an
optional moving average of the weights, evaluation every epoch, best model by validation F1, checkpoints
that a run resumes from exactly, mid-epoch too.

  setup.py      precision, Accelerate, the log, data, model, encoder, batches, optimiser, schedule
  loop.py       the Trainer: epochs of steps, and the events it fires at its Callbacks
  callbacks.py  WeightAveraging, BestModel, Checkpoint, ProgressLog
  checkpoint.py the checkpoint's files (safetensors and JSON) and the fingerprint resume checks
  runfolder.py  the run folder's lock, its recovery after a kill, no silent overwrite
  report.py     the final report on the saved best model
  state.py      TrainState, the progress that a checkpoint keeps
  averaging.py  the moving average of the weights (train.ema)

Run layout (OUTPUT/):
  model/               best model by validation F1, a Hugging Face folder + nerkit.json
  metrics.json         validation and test reports, per-epoch history, timings
  config.yaml          the config this run used
  predictions/         validation.conll, test.conll: 'token gold predicted' for conlleval
  curves.png           training loss and validation F1
  train.log            the log
  checkpoint/          state for --resume (removed when the run finishes)
  .lock                held by the trainer using the folder
"""

from __future__ import annotations

from .loop import Callback, Trainer
from .run import default_callbacks, train
from .setup import limit_corpus
from .state import TrainState

__all__ = ["Callback", "TrainState", "Trainer", "default_callbacks", "limit_corpus", "train"]
