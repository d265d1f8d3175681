{{ config(enabled=scrapesync_has('opencx', 'crawl_jobs')
                  and scrapesync_has('opencx', 'datasources')) }}
{%- set cols = scrapesync_columns(source('opencx', 'crawl_jobs')) %}
-- one row per crawl of a datasource, with the pages it saw
select
    cast(id as {{ txt() }}) as crawl_job_id,
    cast(datasource_id as {{ txt() }}) as datasource_id,
    {{ scrapesync_col(cols, 'status', txt()) }},
    {{ scrapesync_col(cols, 'started_at', ts()) }},
    {{ scrapesync_col(cols, 'completed_at', ts()) }},
    {{ scrapesync_col(cols, 'duration_s', dbl()) }},
    {{ scrapesync_col(cols, 'total_pages', 'bigint') }},
    {{ scrapesync_col(cols, 'completed_pages', 'bigint') }},
    {{ scrapesync_col(cols, 'new_pages', 'bigint') }},
    {{ scrapesync_col(cols, 'updated_pages', 'bigint') }},
    {{ scrapesync_col(cols, 'removed_pages', 'bigint') }},
    {{ scrapesync_col(cols, 'unchanged_pages', 'bigint') }},
    {{ scrapesync_col(cols, 'error_message', txt()) }},
    {{ scrapesync_col(cols, 'created_at', ts()) }},
    {{ scrapesync_col(cols, 'updated_at', ts()) }},
    coalesce({{ scrapesync_val(cols, 'is_terminal', 'boolean') }}, false) as is_terminal,
    coalesce({{ scrapesync_val(cols, 'is_deleted', 'boolean') }}, false) as is_deleted
from {{ source('opencx', 'crawl_jobs') }}
