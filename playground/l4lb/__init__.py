"""VIPs: stable names and addresses with layer-4 balancing (DC/OS's dcos-l4lb).

:mod:`playground.l4lb.vips` reads ``VIP_{n}`` port labels from the leading master's
state; :mod:`playground.l4lb.server` serves them beside every master.
"""
