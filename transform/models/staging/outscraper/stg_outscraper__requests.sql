{{ config(enabled=scrapesync_has('outscraper', 'requests')) }}
{%- set cols = scrapesync_columns(source('outscraper', 'requests')) %}
-- one row per async request; an expired one (results gone before collection) is flagged
select
    cast(id as {{ txt() }}) as request_id,
    {{ scrapesync_col(cols, 'status', txt()) }},
    {{ scrapesync_col(cols, 'source', txt()) }},
    {{ scrapesync_col(cols, 'rows', 'bigint', 'rows_returned') }},
    {{ scrapesync_col(cols, 'queries', 'bigint') }},
    {{ scrapesync_col(cols, 'first_seen_at', ts()) }},
    {{ scrapesync_col(cols, 'collected_at', ts()) }},
    {{ scrapesync_col(cols, 'expired_at', ts()) }},
    {{ scrapesync_val(cols, 'expired_at', ts()) }} is not null as is_expired
from {{ source('outscraper', 'requests') }}
