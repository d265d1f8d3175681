{%- set has_history = scrapesync_has('reworkd', 'outputs_history') -%}
{{ config(enabled=has_history or scrapesync_has('reworkd', 'outputs')) }}
-- Reworkd records as versions with validity: every change when the source's option `history`
-- is on (`outputs_history`, derived_from = 'history'); otherwise only the latest version of
-- each live record (derived_from = 'latest', valid_to NULL). A deleted record's last version
-- closes at its delete: `where is_current` gives exactly the live records.
{%- set staged = ref('stg_reworkd__output_versions') if has_history else ref('stg_reworkd__outputs') %}
{%- set cols = scrapesync_columns(staged) %}
select
    {% if has_history -%}
    record_version_id as product_version_id,
    {%- else -%}
    record_id || ':' || version as product_version_id,
    {%- endif %}
    record_id,
    group_id,
    key_hash,
    version,
    change_id,
    change_type,
    value_hash,
    source_url,
    {% if has_history -%}
    valid_from,
    valid_to,
    valid_to is null as is_current,
    'history' as derived_from,
    {%- else -%}
    updated_at as valid_from,
    cast(null as {{ ts() }}) as valid_to,
    true as is_current,
    'latest' as derived_from,
    {%- endif %}
    is_deleted
    {{ scrapesync_prefixed(cols, 'data__') }}
from {{ staged }}
