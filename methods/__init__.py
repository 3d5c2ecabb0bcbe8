"""Built-in method plugins, installed as ``ssl_bench.methods``: one module per method.

Every module here is imported on the first registry lookup; each registers itself with
``@register_method(name)``. Third-party methods use the ``ssl_bench.methods`` entry-point group.
"""
