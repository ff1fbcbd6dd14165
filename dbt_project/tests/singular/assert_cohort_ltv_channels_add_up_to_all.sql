-- At every cohort and offset, the channel curves add up to the `all` curve: cohort size,
-- revenue, cumulative revenue and cumulative gross margin.
with

channels as (

    select
        cohort_month, month_offset,
        sum(cohort_size) as cohort_size,
        sum(revenue) as revenue,
        sum(cumulative_revenue) as cumulative_revenue,
        sum(cumulative_gross_margin) as cumulative_gross_margin
    from {{ ref('fct_cohort_ltv_by_channel') }}
    where channel <> 'all'
    group by cohort_month, month_offset

),

blended as (

    select cohort_month, month_offset, cohort_size, revenue, cumulative_revenue,
        cumulative_gross_margin
    from {{ ref('fct_cohort_ltv_by_channel') }}
    where channel = 'all'

)

select coalesce(blended.cohort_month, channels.cohort_month) as cohort_month,
    coalesce(blended.month_offset, channels.month_offset) as month_offset
from blended
full outer join channels
    on blended.cohort_month = channels.cohort_month
    and blended.month_offset = channels.month_offset
where blended.cohort_month is null
    or channels.cohort_month is null
    or blended.cohort_size <> channels.cohort_size
    or abs(blended.revenue - channels.revenue) > 0.005
    or abs(blended.cumulative_revenue - channels.cumulative_revenue) > 0.005
    or abs(blended.cumulative_gross_margin - channels.cumulative_gross_margin) > 0.005
