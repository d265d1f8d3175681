"""scrapesync: incremental ELT for web-scraping services, built on dlt.

The repository keeps the layout dlt users know (`sources/`, `pipelines/`, `sandbox/` at its
root); this package is what an install puts into site-packages, so nothing generic lands there:
`scrapesync.sources.<provider>` (the dlt sources), `scrapesync.pipelines` (runner, unified
model, status, the `scrapesync` command) and `scrapesync.sandbox` (the local provider APIs).
In the repository the three are symbolic links to the folders at the root.
"""
