{{ config(enabled=scrapesync_has('opencx', 'crawl_jobs') and scrapesync_has('opencx', 'datasources')) }}
-- open.cx page statistics over time: one row per crawl of each datasource, oldest first, with
-- the pages the crawl saw and the share it completed; the datasource's current page_stats
-- (which open.cx keeps per datasource, not per crawl) sit on its latest crawl.
with crawls as (
    select
        crawls.*,
        coalesce(crawls.started_at, crawls.created_at, crawls.updated_at) as crawled_at,
        row_number() over (
            partition by crawls.datasource_id
            order by coalesce(crawls.started_at, crawls.created_at, crawls.updated_at) desc,
                     crawls.crawl_job_id desc
        ) = 1 as is_latest
    from {{ ref('stg_opencx__crawl_jobs') }} as crawls
)

select
    crawls.crawl_job_id,
    crawls.datasource_id,
    sources.domain,
    sources.display_name,
    sources.is_deleted as datasource_is_deleted,
    crawls.status,
    crawls.is_terminal,
    crawls.crawled_at,
    {{ utc_date('crawls.crawled_at') }} as day,
    crawls.started_at,
    crawls.completed_at,
    crawls.duration_s,
    crawls.total_pages,
    crawls.completed_pages,
    crawls.new_pages,
    crawls.updated_pages,
    crawls.removed_pages,
    crawls.unchanged_pages,
    cast(crawls.completed_pages as {{ dbl() }}) / nullif(crawls.total_pages, 0) as coverage_ratio,
    crawls.is_latest,
    case when crawls.is_latest then sources.pages_total end as pages_total,
    case when crawls.is_latest then sources.pages_synced end as pages_synced,
    case when crawls.is_latest then sources.pages_pending end as pages_pending,
    case when crawls.is_latest then sources.pages_error end as pages_error,
    case when crawls.is_latest then sources.pages_excluded end as pages_excluded
from crawls
join {{ ref('stg_opencx__datasources') }} as sources
    on sources.datasource_id = crawls.datasource_id
