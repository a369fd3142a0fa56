"""Language models behind one incremental interface, and their checkpoint files."""

from ssviz.models.base import LanguageModel, State, Vocab
from ssviz.models.checkpoint import checkpoint_bytes, load_checkpoint, save_checkpoint
from ssviz.models.rnn import CharRNN

__all__ = ["LanguageModel", "State", "Vocab", "CharRNN", "load_checkpoint", "save_checkpoint", "checkpoint_bytes"]
