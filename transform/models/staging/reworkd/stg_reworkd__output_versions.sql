{{ config(enabled=scrapesync_has('reworkd', 'outputs_history')) }}
{%- set cols = scrapesync_columns(source('reworkd', 'outputs_history')) %}
-- every change of every record (option `history`): one row per (group_id, key_hash, _version);
-- a DELETE is a version that closes at once (valid_to = valid_from)
select
    group_id || ':' || key_hash || ':' || _version as record_version_id,
    group_id || ':' || key_hash as record_id,
    cast(group_id as {{ txt() }}) as group_id,
    cast(key_hash as {{ txt() }}) as key_hash,
    cast(_version as {{ txt() }}) as version,
    {{ scrapesync_col(cols, 'id', 'bigint', 'change_id') }},
    {{ scrapesync_col(cols, 'output_id', txt()) }},
    {{ scrapesync_col(cols, 'source_url', txt()) }},
    {{ scrapesync_col(cols, 'value_hash', txt()) }},
    {{ scrapesync_col(cols, 'change_type', txt()) }},
    {{ scrapesync_col(cols, 'create_date', ts(), 'created_at') }},
    {{ scrapesync_col(cols, 'update_date', ts(), 'updated_at') }},
    cast(valid_from as {{ ts() }}) as valid_from,
    cast(valid_to as {{ ts() }}) as valid_to,
    coalesce(change_type = 'DELETE', false) as is_deleted
    {{ scrapesync_prefixed(cols, 'data__') }}
from {{ source('reworkd', 'outputs_history') }}
