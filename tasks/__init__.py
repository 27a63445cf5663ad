"""growrnn's task suite (a leaf package: torch/numpy and growrnn's small Task protocol only).

growrnn finds tasks through the ``growrnn.tasks`` entry-point group, never by a static import.
The tasks themselves (synthetic tasks, PTB, WikiText-2, polyphonic music, IMDB) arrive with the
training layer; this package holds no task yet.
"""

__all__: list[str] = []
