{{ config(enabled=scrapesync_has('reworkd', 'outputs')) }}
{%- set cols = scrapesync_columns(source('reworkd', 'outputs')) %}
-- one row per live record (group_id, key_hash); deletes remove rows from `outputs`, so
-- is_deleted is false here unless a DELETE ever lands as a row
select
    group_id || ':' || key_hash as record_id,
    cast(group_id as {{ txt() }}) as group_id,
    cast(key_hash as {{ txt() }}) as key_hash,
    {{ scrapesync_col(cols, 'id', 'bigint', 'change_id') }},
    {{ scrapesync_col(cols, 'output_id', txt()) }},
    {{ scrapesync_col(cols, 'root_job_id', txt()) }},
    {{ scrapesync_col(cols, 'source_url', txt()) }},
    {{ scrapesync_col(cols, 'value_hash', txt()) }},
    {{ scrapesync_col(cols, 'is_approved', 'boolean') }},
    {{ scrapesync_col(cols, 'change_type', txt()) }},
    {{ scrapesync_col(cols, 'create_date', ts(), 'created_at') }},
    {{ scrapesync_col(cols, 'update_date', ts(), 'updated_at') }},
    {{ scrapesync_col(cols, 'last_scraped_date', ts(), 'last_scraped_at') }},
    cast(_version as {{ txt() }}) as version,
    coalesce(_deleted, false) or coalesce(change_type = 'DELETE', false) as is_deleted
    {{ scrapesync_prefixed(cols, 'data__') }}
    {{ scrapesync_prefixed(cols, 'tags__') }}
from {{ source('reworkd', 'outputs') }}
