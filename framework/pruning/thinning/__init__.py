"""Thinning: a masked model made physically smaller, its recipe (widths only) and file. (The room
is not called ``thin``: ``framework.pruning.thin`` is the function, a public name.)

* :mod:`.thin`         - :func:`~.thin.thin`: masked model -> smaller dense model, recipe, optimizer state, file.
* :mod:`.attention`    - thinned ``nn.MultiheadAttention`` and Swin window attention (fewer heads).
* :mod:`.recipe_check` - a recipe read from a file sets widths only, each checked against the model.
"""
