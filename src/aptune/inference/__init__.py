"""Using a tuned model: an interactive chat in the terminal (``chat.py``) and batched generation
over a prompts file (``batch.py``), on a model name, an exported folder or a run directory
(``loading.py``)."""
