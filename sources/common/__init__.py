"""Shared code below every provider package; it names no provider.

One module a job: `errors` (the one error type and its builders), `client` (dlt's RESTClient
over the retrying session), `stats` (request counters), `paginators`, `timeutil`,
`validation` (checks on decoded items) and `concurrency`. Providers import what they use from
the module that holds it.
"""
