{%- set has_syncs = scrapesync_has('scrapesync', 'sync_runs') -%}
{{ config(enabled=scrapesync_has('scrapesync', 'scrape_runs')) }}
-- Per provider, parent (scraper / group / datasource / batch) and UTC day: how the scraping
-- went. `failed` counts every run that ended without success (failed, cancelled, expired);
-- runs - succeeded - failed are still open. success_rate = succeeded / ended runs (NULL while
-- none ended). data_lag_s: the worst, over the day's ended runs, of the time from a run's end
-- to the end of the first successful sync of its provider after it (when its result could
-- first be queried). Soft-deleted runs count: they ran.
with runs as (
    select
        scrape_run_id,
        provider,
        coalesce(parent_id, '(none)') as parent_id,
        -- a run not started yet is dated by the load that last wrote it (dlt load ids are
        -- unix timestamps)
        {{ utc_date("coalesce(started_at, finished_at, to_timestamp(cast(source_load_id as " ~ dbl() ~ ")))") }} as day,
        state,
        finished_at,
        duration_s,
        items_ok,
        items_failed
    from {{ ref('stg_scrapesync__scrape_runs') }}
),

{% if has_syncs %}
syncs as (
    select provider, finished_at
    from {{ ref('stg_scrapesync__sync_runs') }}
    where is_whole_sync and outcome in ('ok', 'warning')
),

visible as (
    select runs.scrape_run_id, min(syncs.finished_at) as visible_at
    from runs
    join syncs
        on syncs.provider = runs.provider and syncs.finished_at >= runs.finished_at
    group by runs.scrape_run_id
),
{% endif %}

lagged as (
    select
        runs.*,
        {% if has_syncs -%}
        greatest({{ epoch_s('visible.visible_at', 'runs.finished_at') }}, 0) as lag_s
        {%- else -%}
        cast(null as {{ dbl() }}) as lag_s
        {%- endif %}
    from runs
    {% if has_syncs -%}
    left join visible on visible.scrape_run_id = runs.scrape_run_id
    {%- endif %}
)

select
    provider,
    parent_id,
    day,
    count(*) as runs,
    sum(case when state = 'succeeded' then 1 else 0 end) as succeeded,
    sum(case when state in ('failed', 'cancelled', 'expired') then 1 else 0 end) as failed,
    cast(sum(case when state = 'succeeded' then 1 else 0 end) as {{ dbl() }})
        / nullif(sum(case when state in ('succeeded', 'failed', 'cancelled', 'expired')
                          then 1 else 0 end), 0) as success_rate,
    coalesce(sum(items_ok), 0) as items_ok,
    coalesce(sum(items_failed), 0) as items_failed,
    cast(percentile_cont(0.5) within group (order by duration_s) as {{ dbl() }}) as duration_p50_s,
    cast(percentile_cont(0.95) within group (order by duration_s) as {{ dbl() }}) as duration_p95_s,
    cast(max(lag_s) as {{ dbl() }}) as data_lag_s
from lagged
group by provider, parent_id, day
