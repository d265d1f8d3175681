{{ config(enabled=scrapesync_has('outscraper', 'tasks')) }}
{%- set cols = scrapesync_columns(source('outscraper', 'tasks')) %}
-- one row per task; tasks removed at Outscraper stay, flagged
select
    cast(id as {{ txt() }}) as task_id,
    {{ scrapesync_col(cols, 'queue_task_id', txt()) }},
    {{ scrapesync_col(cols, 'user_id', txt()) }},
    {{ scrapesync_col(cols, 'status', txt()) }},
    {{ scrapesync_col(cols, 'service_name', txt()) }},
    {{ scrapesync_col(cols, 'product_name', txt()) }},
    {{ scrapesync_col(cols, 'quantity', 'bigint') }},
    {{ scrapesync_col(cols, 'created', ts(), 'created_at') }},
    {{ scrapesync_col(cols, 'updated', ts(), 'updated_at') }},
    {{ scrapesync_col(cols, 'removed_at', ts()) }},
    coalesce({{ scrapesync_val(cols, 'removed', 'boolean') }}, false) as is_deleted
from {{ source('outscraper', 'tasks') }}
