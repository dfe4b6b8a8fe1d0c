"""The model's graph as the pruner reads it: torch.fx tracing, the layer types, and the dependency
groups (which channels across layers are removed together), built by table-driven op handlers.

* :mod:`.fx`         - tracing with one-line errors, layer-type tuples, wrapper prefixes.
* :mod:`.dependency` - :func:`~.dependency.build_dependency_graph`: trace, shapes, walk, assemble.
* :mod:`.groups`     - what the walk returns: members, coupled channels, groups, exclusions.
* :mod:`.state`      - the walk's state (channel ids per value, members, fixed ids) and its operations.
* :mod:`.ops`        - the op tables: node kind, module type, function, method name -> handlers.
* :mod:`.channels`   - channel ids of one tensor, over one dim or several (heads).
* :mod:`.layers`, :mod:`.elementwise`, :mod:`.reshapes`, :mod:`.layouts`, :mod:`.heads` - the handlers.
"""
