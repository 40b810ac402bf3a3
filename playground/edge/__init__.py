"""The edge: marathon-lb's semantics on the public agent (``edge-1``).

* :mod:`playground.edge.model` -- what the edge serves (services, servers), the contract
  between the configuration builder and the data planes;
* :mod:`playground.edge.config` -- marathon-lb's label rules: Marathon's apps in, the
  model and HAProxy 2.6 configuration out;
* :mod:`playground.edge.proxy` -- the kit's own data plane (asyncio TCP/HTTP proxy);
* :mod:`playground.edge.server` -- the ``edge`` node: follows Marathon, runs a data plane
  (the kit's proxy or real HAProxy), serves marathon-lb's endpoints on its stats port.
"""
