-- The `all` curve of fct_cohort_ltv_by_channel is the cohort LTV curve of
-- fct_cohort_retention: same cohorts, offsets, sizes and ltv to the cent.
with

blended as (

    select cohort_month, month_offset, cohort_size, cumulative_revenue, ltv
    from {{ ref('fct_cohort_ltv_by_channel') }}
    where channel = 'all'

),

retention as (

    select cohort_month, month_offset, cohort_size, cumulative_revenue, ltv
    from {{ ref('fct_cohort_retention') }}

)

select
    coalesce(blended.cohort_month, retention.cohort_month) as cohort_month,
    coalesce(blended.month_offset, retention.month_offset) as month_offset,
    blended.ltv as channel_mart_ltv,
    retention.ltv as retention_ltv
from blended
full outer join retention
    on blended.cohort_month = retention.cohort_month
    and blended.month_offset = retention.month_offset
where blended.cohort_month is null
    or retention.cohort_month is null
    or blended.cohort_size <> retention.cohort_size
    or blended.cumulative_revenue <> retention.cumulative_revenue
    or blended.ltv <> retention.ltv
