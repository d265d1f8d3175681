{{ config(enabled=scrapesync_has('scrapesync', 'scrape_runs')) }}
-- one row per provider run / job / task / crawl, as pipelines/unified.py maps them
select
    provider || ':' || source_table || ':' || run_id as scrape_run_id,
    cast(provider as {{ txt() }}) as provider,
    cast(source_table as {{ txt() }}) as source_table,
    cast(run_id as {{ txt() }}) as run_id,
    cast(parent_id as {{ txt() }}) as parent_id,
    cast(state as {{ txt() }}) as state,
    cast(raw_state as {{ txt() }}) as raw_state,
    cast(started_at as {{ ts() }}) as started_at,
    cast(finished_at as {{ ts() }}) as finished_at,
    cast(duration_s as {{ dbl() }}) as duration_s,
    cast(items_ok as bigint) as items_ok,
    cast(items_failed as bigint) as items_failed,
    coalesce(is_deleted, false) as is_deleted,
    cast(source_ref as {{ txt() }}) as source_ref,
    cast(source_load_id as {{ txt() }}) as source_load_id
from {{ source('scrapesync', 'scrape_runs') }}
