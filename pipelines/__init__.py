"""Runnable scrapesync pipelines and the `scrapesync` command line."""
