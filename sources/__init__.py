"""scrapesync's dlt sources: one package per provider, shared HTTP code in `sources.common`."""
