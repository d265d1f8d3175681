"""Shared code below every provider package; it names no provider.

One module a job: `errors` (the one error type and its builders), `client` (dlt's RESTClient
over the retrying session), `stats` (request counters), `paginators`, `pacing` (the one
client-side rate limiter), `timeutil`, `validation` (checks on decoded items), `concurrency`,
`inbox` (the webhook inbox) and `provider` (the description each provider package exports).
Providers import what they use from the module that holds it.
"""
