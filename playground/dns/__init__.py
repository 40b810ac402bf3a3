"""Service discovery: the kit's mesos-dns, run beside every master.

``records`` turns a leading master's ``/master/state`` into mesos-dns's records (pure
logic), ``server`` answers DNS over UDP and TCP and serves mesos-dns's HTTP API, and
``config`` holds mesos-dns's configuration with its defaults.
"""
