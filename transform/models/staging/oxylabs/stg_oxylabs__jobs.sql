{{ config(enabled=scrapesync_has('oxylabs', 'jobs')) }}
{%- set cols = scrapesync_columns(source('oxylabs', 'jobs')) %}
-- one row per push-pull job (batch or Scheduler); a resubmitted job names its successor
select
    cast(id as {{ txt() }}) as job_id,
    {{ scrapesync_col(cols, 'batch_id', txt()) }},
    {{ scrapesync_col(cols, 'status', txt()) }},
    {{ scrapesync_col(cols, 'source', txt()) }},
    {{ scrapesync_col(cols, 'url', txt()) }},
    {{ url_domain(scrapesync_val(cols, 'url', txt())) }} as domain,
    {{ scrapesync_col(cols, 'query', txt()) }},
    {{ scrapesync_col(cols, 'origin', txt()) }},
    {{ scrapesync_col(cols, 'attempt', 'bigint') }},
    {{ scrapesync_col(cols, 'submitted_at', ts()) }},
    {{ scrapesync_col(cols, 'finished_at', ts()) }},
    {{ scrapesync_col(cols, 'callback_at', ts()) }},
    {{ scrapesync_col(cols, 'fault_code', 'bigint') }},
    {{ scrapesync_col(cols, 'fault_reason', txt()) }},
    {{ scrapesync_col(cols, 'result_pages', 'bigint') }},
    {{ scrapesync_col(cols, 'resubmitted_as', txt(), 'resubmitted_as_job_id') }}
from {{ source('oxylabs', 'jobs') }}
