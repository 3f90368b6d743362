"""prompthone: optimize the prompts of LM programs."""

from prompthone.lm import LM, Completion, LMError, Usage

__all__ = ["LM", "Completion", "LMError", "Usage", "__version__"]
__version__ = "0.1.0"
