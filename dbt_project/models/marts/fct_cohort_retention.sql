-- One row per cohort (month of first order) and month offset k = 0 .. as-of month.
-- retention_rate = share of the cohort with >= 1 order in calendar month cohort + k;
-- ltv = cumulative revenue of the cohort through month k / cohort size (the LTV curve).
-- is_observable (docs metrics.md, "Periods"): month cohort + k is complete (the as-of date is
-- after its last day, int_months.month_complete); the cell of an incomplete month is partial.
with

customers as (

    select customer_id, cohort_month from {{ ref('dim_customers') }}

),

orders as (

    select customer_id, order_month, amount from {{ ref('int_orders') }}

),

months as (

    select month, month_complete from {{ ref('int_months') }}

),

cohorts as (

    select cohort_month, count(*) as cohort_size
    from customers
    group by cohort_month

),

cohort_offsets as (

    select
        cohorts.cohort_month,
        cohorts.cohort_size,
        months.month as activity_month,
        months.month_complete as is_observable,
        {{ months_between('cohorts.cohort_month', 'months.month') }} as month_offset
    from cohorts
    inner join months
        on months.month >= cohorts.cohort_month

),

cohort_activity as (

    select
        customers.cohort_month,
        orders.order_month as activity_month,
        count(distinct orders.customer_id) as active_customers,
        sum(orders.amount) as revenue
    from orders
    inner join customers
        on orders.customer_id = customers.customer_id
    group by customers.cohort_month, orders.order_month

),

joined as (

    select
        cohort_offsets.cohort_month,
        cohort_offsets.month_offset,
        cohort_offsets.cohort_size,
        cohort_offsets.is_observable,
        coalesce(cohort_activity.active_customers, 0) as active_customers,
        sum(coalesce(cohort_activity.revenue, 0)) over (
            partition by cohort_offsets.cohort_month
            order by cohort_offsets.month_offset
            rows between unbounded preceding and current row
        ) as cumulative_revenue
    from cohort_offsets
    left join cohort_activity
        on cohort_offsets.cohort_month = cohort_activity.cohort_month
        and cohort_offsets.activity_month = cohort_activity.activity_month

),

final as (

    select
        cohort_month,
        cast(month_offset as integer) as month_offset,
        cohort_size,
        active_customers,
        {{ safe_divide('active_customers', 'cohort_size') }} as retention_rate,
        {{ money('cumulative_revenue') }} as cumulative_revenue,
        {{ money(safe_divide('cumulative_revenue', 'cohort_size')) }} as ltv,
        is_observable
    from joined

)

select * from final
