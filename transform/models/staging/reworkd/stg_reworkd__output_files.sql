{{ config(enabled=scrapesync_has('reworkd', 'outputs__files')
                  and scrapesync_has('reworkd', 'outputs')) }}
{%- set cols = scrapesync_columns(source('reworkd', 'outputs__files')) %}
-- one row per file of each live record (group_id, key_hash, file_index)
select
    group_id || ':' || key_hash || ':' || cast(file_index as {{ txt() }}) as output_file_id,
    group_id || ':' || key_hash as record_id,
    cast(group_id as {{ txt() }}) as group_id,
    cast(key_hash as {{ txt() }}) as key_hash,
    cast(file_index as bigint) as file_index,
    {{ scrapesync_col(cols, 'file_id', txt()) }},
    {{ scrapesync_col(cols, 'field', txt()) }},
    {{ scrapesync_col(cols, 'file_type', txt()) }},
    {{ scrapesync_col(cols, 'file_url', txt()) }},
    {{ scrapesync_col(cols, 's3_url', txt()) }},
    {{ scrapesync_col(cols, 'source_url', txt()) }},
    {{ scrapesync_col(cols, 'file_checksum', txt()) }},
    {{ scrapesync_col(cols, 'create_date', ts(), 'created_at') }},
    {{ scrapesync_col(cols, 'update_date', ts(), 'updated_at') }},
    cast(_version as {{ txt() }}) as version,
    coalesce(_deleted, false) as is_deleted
from {{ source('reworkd', 'outputs__files') }}
