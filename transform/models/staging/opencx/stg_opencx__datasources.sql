{{ config(enabled=scrapesync_has('opencx', 'datasources')) }}
{%- set cols = scrapesync_columns(source('opencx', 'datasources')) %}
-- one row per website datasource, with its current page statistics; removed ones stay, flagged
select
    cast(id as {{ txt() }}) as datasource_id,
    {{ scrapesync_col(cols, 'url', txt()) }},
    {{ url_domain('url') }} as domain,
    {{ scrapesync_col(cols, 'display_name', txt()) }},
    {{ scrapesync_col(cols, 'status', txt()) }},
    {{ scrapesync_col(cols, 'page_limit', 'bigint') }},
    {{ scrapesync_col(cols, 'crawl_interval_hours', 'bigint') }},
    {{ scrapesync_col(cols, 'page_stats__total', 'bigint', 'pages_total') }},
    {{ scrapesync_col(cols, 'page_stats__synced', 'bigint', 'pages_synced') }},
    {{ scrapesync_col(cols, 'page_stats__pending', 'bigint', 'pages_pending') }},
    {{ scrapesync_col(cols, 'page_stats__error', 'bigint', 'pages_error') }},
    {{ scrapesync_col(cols, 'page_stats__excluded', 'bigint', 'pages_excluded') }},
    {{ scrapesync_col(cols, 'last_crawl_started_at', ts()) }},
    {{ scrapesync_col(cols, 'last_crawl_completed_at', ts()) }},
    {{ scrapesync_col(cols, 'created_at', ts()) }},
    {{ scrapesync_col(cols, 'updated_at', ts()) }},
    {{ scrapesync_col(cols, 'deleted_at', ts()) }},
    coalesce({{ scrapesync_val(cols, 'is_deleted', 'boolean') }}, false) as is_deleted
from {{ source('opencx', 'datasources') }}
