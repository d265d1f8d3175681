{{ config(enabled=scrapesync_has('scrapewise', 'job_errors')
                  and scrapesync_has('scrapewise', 'jobs')) }}
{%- set cols = scrapesync_columns(source('scrapewise', 'job_errors')) %}
-- one row per failed link of a terminal run (job_id, url)
select
    job_id || ' ' || url as job_error_id,
    cast(job_id as {{ txt() }}) as run_id,
    {{ scrapesync_col(cols, 'group_id', txt()) }},
    {{ scrapesync_col(cols, 'scraper_id', txt()) }},
    cast(url as {{ txt() }}) as url,
    {{ url_domain('url') }} as domain,
    {{ scrapesync_col(cols, 'status', 'bigint', 'http_status') }},
    {{ scrapesync_col(cols, 'error', txt()) }},
    {{ scrapesync_col(cols, 'job_finished', ts(), 'run_finished_at') }}
from {{ source('scrapewise', 'job_errors') }}
