{{ config(enabled=scrapesync_has('oxylabs', 'schedules')) }}
{%- set cols = scrapesync_columns(source('oxylabs', 'schedules')) %}
-- one row per Scheduler schedule; deleted schedules stay, flagged
select
    cast(schedule_id as {{ txt() }}) as schedule_id,
    {{ scrapesync_col(cols, 'active', 'boolean', 'is_active') }},
    {{ scrapesync_col(cols, 'cron', txt()) }},
    {{ scrapesync_col(cols, 'items_count', 'bigint') }},
    {{ scrapesync_col(cols, 'total_job_count', 'bigint') }},
    {{ scrapesync_col(cols, 'next_run_at', ts()) }},
    {{ scrapesync_col(cols, 'end_time', ts(), 'ends_at') }},
    coalesce({{ scrapesync_val(cols, '_deleted', 'boolean') }}, false) as is_deleted
from {{ source('oxylabs', 'schedules') }}
