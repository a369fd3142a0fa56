"""Language models behind one incremental interface, and their model files.

``load_model`` reads every kind ssviz understands (a character model's checkpoint, a
Hugging Face model directory or zip) and ``model_bytes`` writes them as bytes; ``load_checkpoint`` only
the character models' files.
"""

from ssviz.models.base import LanguageModel, State, Vocab
from ssviz.models.checkpoint import checkpoint_bytes, load_checkpoint, save_checkpoint
from ssviz.models.loading import load_model, model_bytes
from ssviz.models.rnn import CharRNN

__all__ = ["LanguageModel", "State", "Vocab", "CharRNN", "load_checkpoint", "load_model", "save_checkpoint",
           "checkpoint_bytes", "model_bytes"]
