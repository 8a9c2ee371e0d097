"""Routes (spec §8): trigger DAGs from the events upstream systems already emit.

A route reads events from its topics (any JSON, or CloudEvents in either Kafka content
mode), takes those its ``match`` expression accepts, and builds an ordinary v1 trigger
request from each; the request then goes through the pipeline like a native one::

    record ─► event (routes.event) ─► per route: match ─► derive (routes.derive) ─► screen …
    config file [[routes]] ─► RouteTable (routes.config): compiled and checked at start-up

Expressions are JMESPath (routes.template). Import from the submodules: settings import
``routes.config``, which must not pull in the pipeline.
"""
