-- fct_acquisition_monthly's ltv_horizon and cac_payback_months read the curves of
-- fct_cohort_ltv_by_channel: ltv_horizon = ltv at offset var('ltv_horizon_months') when that
-- month is complete; cac_payback_months = the first offset with payback_reached. Also: the
-- month's attributed revenue is the sum over cohorts of the curve's revenue in that month.
with

acquisition as (

    select month, channel, new_customers, ltv_horizon, cac_payback_months, attributed_revenue
    from {{ ref('fct_acquisition_monthly') }}

),

curves as (

    select * from {{ ref('fct_cohort_ltv_by_channel') }}

),

horizon as (

    select cohort_month, channel, case when month_complete then ltv end as ltv_horizon
    from curves
    where month_offset = {{ var('ltv_horizon_months') }}

),

payback as (

    select cohort_month, channel, min(month_offset) as cac_payback_months
    from curves
    where payback_reached
    group by cohort_month, channel

),

monthly_revenue as (

    select
        {{ add_months('cohort_month', 'month_offset') }} as month,
        channel,
        sum(revenue) as revenue
    from curves
    group by {{ add_months('cohort_month', 'month_offset') }}, channel

)

select acquisition.month, acquisition.channel
from acquisition
left join horizon
    on acquisition.month = horizon.cohort_month and acquisition.channel = horizon.channel
left join payback
    on acquisition.month = payback.cohort_month and acquisition.channel = payback.channel
left join monthly_revenue
    on acquisition.month = monthly_revenue.month and acquisition.channel = monthly_revenue.channel
where acquisition.ltv_horizon is distinct from horizon.ltv_horizon
    or acquisition.cac_payback_months is distinct from payback.cac_payback_months
    or abs(acquisition.attributed_revenue - coalesce(monthly_revenue.revenue, 0)) > 0.005
