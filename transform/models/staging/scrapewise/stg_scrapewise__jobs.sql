{{ config(enabled=scrapesync_has('scrapewise', 'jobs')) }}
{%- set cols = scrapesync_columns(source('scrapewise', 'jobs')) %}
-- one row per scraper run (Scrapewise's "load history" entry)
select
    cast(id as {{ txt() }}) as run_id,
    {{ scrapesync_col(cols, 'job_id', txt()) }},
    {{ scrapesync_col(cols, 'scraper_id', txt()) }},
    {{ scrapesync_col(cols, 'scraper_name', txt()) }},
    {{ scrapesync_col(cols, 'group_id', txt()) }},
    {{ scrapesync_col(cols, 'state', txt()) }},
    {{ scrapesync_col(cols, 'started', ts(), 'started_at') }},
    {{ scrapesync_col(cols, 'finished', ts(), 'finished_at') }},
    {{ scrapesync_col(cols, 'duration', 'bigint', 'duration_s') }},
    {{ scrapesync_col(cols, 'success_links', 'bigint') }},
    {{ scrapesync_col(cols, 'error_links', 'bigint') }},
    {{ scrapesync_col(cols, 'items_quantity', 'bigint') }},
    {{ scrapesync_col(cols, 'total_requests', 'bigint') }},
    {{ scrapesync_col(cols, 'stop_reason', txt()) }},
    {{ scrapesync_col(cols, 'error_message', txt()) }},
    coalesce({{ scrapesync_val(cols, 'is_deleted', 'boolean') }}, false) as is_deleted
from {{ source('scrapewise', 'jobs') }}
