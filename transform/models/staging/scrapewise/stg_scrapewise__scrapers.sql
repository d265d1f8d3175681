{{ config(enabled=scrapesync_has('scrapewise', 'scrapers')) }}
{%- set cols = scrapesync_columns(source('scrapewise', 'scrapers')) %}
-- one row per scraper; soft-deleted scrapers stay, flagged
select
    cast(id as {{ txt() }}) as scraper_id,
    {{ scrapesync_col(cols, 'name', txt(), 'scraper_name') }},
    {{ scrapesync_col(cols, 'type', txt(), 'scraper_type') }},
    {{ scrapesync_col(cols, 'group_id', txt()) }},
    {{ scrapesync_col(cols, 'schema_id', txt()) }},
    {{ scrapesync_col(cols, 'source_url', txt()) }},
    {{ scrapesync_col(cols, 'last_run', ts(), 'last_run_at') }},
    {{ scrapesync_col(cols, 'last_run_state', txt()) }},
    {{ scrapesync_col(cols, 'created_at', ts()) }},
    {{ scrapesync_col(cols, 'updated_at', ts()) }},
    coalesce({{ scrapesync_val(cols, 'is_deleted', 'boolean') }}, false) as is_deleted
from {{ source('scrapewise', 'scrapers') }}
