"""The ``monitor`` node: scrapes the cluster, evaluates alert rules, keeps the incident log.

Modules: :mod:`promql` (the PromQL subset), :mod:`rules` (rule files), :mod:`alerts`
(``for:`` and alert states), :mod:`tickets` (the incident log), :mod:`scrape` (targets
to samples), :mod:`remediation`, :mod:`export` (files for a real Prometheus) and
:mod:`server` (the node process).
"""
