{%- set has_links = scrapesync_has('scrapewise', 'job_errors') and scrapesync_has('scrapewise', 'jobs') -%}
{%- set has_jobs = scrapesync_has('oxylabs', 'jobs') -%}
{{ config(enabled=has_links or has_jobs) }}
-- What failed where: Scrapewise's failed links and Oxylabs' faulted jobs, by provider, domain
-- and status. status: 'http <code>' or 'no http status' (the link failed without an answer:
-- timeout, parser error) for Scrapewise; 'fault <code>' (or 'faulted') for Oxylabs. A job
-- without a URL (a query-based source) is filed under '(<source>)'.
with failures as (
    {% if has_links %}
    select
        'scrapewise' as provider,
        coalesce(nullif(domain, ''), '(unknown)') as domain,
        coalesce('http ' || cast(http_status as {{ txt() }}), 'no http status') as status,
        run_id,
        url,
        error,
        run_finished_at as failed_at
    from {{ ref('stg_scrapewise__job_errors') }}
    {% endif %}
    {% if has_links and has_jobs %}
    union all
    {% endif %}
    {% if has_jobs %}
    select
        'oxylabs' as provider,
        coalesce(nullif(domain, ''), '(' || source || ')', '(unknown)') as domain,
        coalesce('fault ' || cast(fault_code as {{ txt() }}), 'faulted') as status,
        job_id as run_id,
        coalesce(url, query) as url,
        fault_reason as error,
        finished_at as failed_at
    from {{ ref('stg_oxylabs__jobs') }}
    where status = 'faulted'
    {% endif %}
)

select
    provider || ' ' || domain || ' ' || status as failed_link_id,
    provider,
    domain,
    status,
    count(*) as failures,
    count(distinct run_id) as runs,
    min(failed_at) as first_failed_at,
    max(failed_at) as last_failed_at,
    min(url) as example_url,
    min(error) as example_error
from failures
group by provider, domain, status
