-- One row per cohort (month of first order) x channel (first touch; plus 'all', every channel
-- together) x month offset k = 0 .. the as-of month: the historical LTV curve and the CAC
-- payback curve of the cohort.
--   revenue = the cohort's revenue in calendar month cohort + k; ltv = cumulative revenue
--   through month k / cohort size; gross_margin_per_customer = cumulative gross margin / cohort
--   size; cac = the cohort's cac in fct_acquisition_monthly; payback_reached =
--   gross_margin_per_customer >= cac (null when cac is); month_complete = the as-of date is
--   after the last day of month cohort + k; spend_covered = the cohort month's
--   fct_acquisition_monthly.spend_covered (false: cac and payback_reached are null, the
--   channel's spend of that month is incomplete); is_observable (docs metrics.md, "Periods")
--   = the as-of date is after the last day of month cohort + k (int_months.month_complete),
--   the cell is final; a cell of an incomplete month is still growing.
with

cohort_groups as (

    select * from {{ ref('int_cohort_value_by_offset') }}

),

acquisition as (

    select month, channel, cac, spend_covered from {{ ref('fct_acquisition_monthly') }}

),

months as (

    select month, month_complete from {{ ref('int_months') }}

),

-- the groups are dense in month_offset, so the running totals add up at each offset
per_channel as (

    select
        cohort_month, channel, month_offset, month_complete,
        sum(cohort_size) as cohort_size,
        sum(revenue) as revenue,
        sum(cumulative_revenue) as cumulative_revenue,
        sum(cumulative_gross_margin) as cumulative_gross_margin
    from cohort_groups
    group by cohort_month, channel, month_offset, month_complete

),

blended as (

    select
        cohort_month, 'all' as channel, month_offset, month_complete,
        sum(cohort_size) as cohort_size,
        sum(revenue) as revenue,
        sum(cumulative_revenue) as cumulative_revenue,
        sum(cumulative_gross_margin) as cumulative_gross_margin
    from cohort_groups
    group by cohort_month, month_offset, month_complete

),

unioned as (

    select * from per_channel
    union all
    select * from blended

),

curves as (

    select
        unioned.cohort_month,
        unioned.channel,
        unioned.month_offset,
        unioned.cohort_size,
        {{ money('unioned.revenue') }} as revenue,
        {{ money('unioned.cumulative_revenue') }} as cumulative_revenue,
        {{ money(safe_divide('unioned.cumulative_revenue', 'unioned.cohort_size')) }} as ltv,
        {{ money('unioned.cumulative_gross_margin') }} as cumulative_gross_margin,
        {{ money(safe_divide('unioned.cumulative_gross_margin', 'unioned.cohort_size')) }}
            as gross_margin_per_customer,
        acquisition.cac,
        unioned.month_complete,
        coalesce(acquisition.spend_covered, true) as spend_covered,
        coalesce(months.month_complete, false) as is_observable
    from unioned
    left join months
        on months.month >= unioned.cohort_month
        and {{ months_between('unioned.cohort_month', 'months.month') }} = unioned.month_offset
    left join acquisition
        on unioned.cohort_month = acquisition.month
        and unioned.channel = acquisition.channel

),

final as (

    select
        cohort_month,
        channel,
        cast(month_offset as integer) as month_offset,
        cast(cohort_size as bigint) as cohort_size,
        revenue,
        cumulative_revenue,
        ltv,
        cumulative_gross_margin,
        gross_margin_per_customer,
        cac,
        gross_margin_per_customer >= cac as payback_reached,
        month_complete,
        spend_covered,
        is_observable
    from curves

)

select * from final
