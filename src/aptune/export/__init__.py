"""A tuned model out of a run directory, in the forms other tools load.

``export_run(RUN_DIR, DIR, format=...)``:

- ``merged`` — a Hugging Face model folder: the base weights with every accepted round's LoRA
  merged in, as safetensors, plus the tokenizer (with its chat template) and the generation
  config; ``AutoModelForCausalLM.from_pretrained(DIR)`` loads it with no aptune installed.
- ``peft`` — one PEFT LoRA adapter folder equivalent to the accepted rounds
  (``peft_compose.py``): merged rounds add their low-rank updates, so they compose exactly into
  one adapter of the summed rank; ``PeftModel.from_pretrained(base, DIR)`` loads it.
- ALoRA adapters mix tokens and cannot merge: the export is the adapter folder with a
  one-function loader (``load_alora.py``, which needs aptune), and the card says so.

Every export carries a model card (``README.md``, ``card.py``) drawn from the run's own files:
base model, method and settings, data, rounds accepted, and the measured domain and general
changes with their intervals.
"""

from __future__ import annotations

from aptune.export.exporter import ExportError, ExportFormat, export_run

__all__ = ["ExportError", "ExportFormat", "export_run"]
