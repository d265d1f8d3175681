{{ config(enabled=scrapesync_has('scrapesync', 'sync_runs')) }}
-- one row per table per sync, plus the sync as a whole (resource '*'); pipelines/metrics.py
select
    sync_id || ':' || resource as sync_run_id,
    cast(sync_id as {{ txt() }}) as sync_id,
    cast(provider as {{ txt() }}) as provider,
    cast(resource as {{ txt() }}) as resource,
    resource = '*' as is_whole_sync,
    cast(started_at as {{ ts() }}) as started_at,
    cast(finished_at as {{ ts() }}) as finished_at,
    cast(outcome as {{ txt() }}) as outcome,
    cast(error as {{ txt() }}) as error,
    cast(rows_inserted as bigint) as rows_inserted,
    cast(rows_updated as bigint) as rows_updated,
    cast(rows_deleted as bigint) as rows_deleted,
    cast(rows_total as bigint) as rows_total,
    cast(requests as bigint) as requests,
    cast(retries as bigint) as retries,
    cast(throttled as bigint) as throttled,
    cast(bytes as bigint) as bytes,
    cast(newest_record_at as {{ ts() }}) as newest_record_at,
    cast(lag_s as {{ dbl() }}) as lag_s,
    cast(warnings as bigint) as warnings
from {{ source('scrapesync', 'sync_runs') }}
