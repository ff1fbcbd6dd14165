-- One row per acquisition group — cohort month x channel x first-touch campaign (platform,
-- account, campaign_id; null when none) — and month offset k = 0 .. the as-of month: the
-- group's customers (cohort_size), the revenue and gross margin of their orders in calendar
-- month cohort + k, and the running totals from k = 0. Dense in k, so the running totals of
-- any coarser grouping (a channel, all channels) are plain sums of these rows at one offset.
-- month_complete: the as-of date is after the last day of month cohort + k (metrics.md
-- "Periods"; the same rule as int_months).
with

customers as (

    select * from {{ ref('int_customer_acquisition') }}

),

orders as (

    select customer_id, order_month, amount, gross_margin, margin_known, has_source_margin
    from {{ ref('int_orders') }}

),

months as (

    select month, next_month from {{ ref('int_months') }}

),

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

groups as (

    select
        cohort_month, channel, is_ad_touch, platform, account, campaign_id,
        count(*) as cohort_size
    from customers
    group by cohort_month, channel, is_ad_touch, platform, account, campaign_id

),

group_orders as (

    select
        customers.cohort_month,
        customers.channel,
        customers.is_ad_touch,
        customers.platform,
        customers.account,
        customers.campaign_id,
        orders.order_month,
        count(*) as orders,
        sum(case when orders.margin_known then 0 else 1 end) as orders_margin_unknown,
        sum(orders.amount) as revenue,
        sum(case when orders.has_source_margin then orders.amount else 0 end)
            as revenue_source_margin,
        sum(orders.gross_margin) as gross_margin
    from orders
    inner join customers
        on orders.customer_id = customers.customer_id
    group by customers.cohort_month, customers.channel, customers.is_ad_touch,
        customers.platform, customers.account, customers.campaign_id, orders.order_month

),

-- every group x every month from its cohort month to the as-of month
spine as (

    select
        groups.*,
        months.month as activity_month,
        {{ months_between('groups.cohort_month', 'months.month') }} as month_offset,
        months.next_month <= as_of.as_of_date as month_complete
    from groups
    inner join months
        on months.month >= groups.cohort_month
    cross join as_of

),

-- nullable campaign keys: `is not distinct from` keeps the no-campaign groups joined
joined as (

    select
        spine.cohort_month,
        spine.channel,
        spine.is_ad_touch,
        spine.platform,
        spine.account,
        spine.campaign_id,
        spine.month_offset,
        spine.activity_month,
        spine.month_complete,
        spine.cohort_size,
        coalesce(group_orders.orders, 0) as orders,
        coalesce(group_orders.orders_margin_unknown, 0) as orders_margin_unknown,
        coalesce(group_orders.revenue, 0) as revenue,
        coalesce(group_orders.revenue_source_margin, 0) as revenue_source_margin,
        coalesce(group_orders.gross_margin, 0) as gross_margin
    from spine
    left join group_orders
        on spine.cohort_month = group_orders.cohort_month
        and spine.channel = group_orders.channel
        and spine.is_ad_touch = group_orders.is_ad_touch
        and spine.platform is not distinct from group_orders.platform
        and spine.account is not distinct from group_orders.account
        and spine.campaign_id is not distinct from group_orders.campaign_id
        and spine.activity_month = group_orders.order_month

),

final as (

    select
        cohort_month,
        channel,
        is_ad_touch,
        platform,
        account,
        campaign_id,
        cast(month_offset as integer) as month_offset,
        activity_month,
        month_complete,
        cast(cohort_size as bigint) as cohort_size,
        cast(orders as bigint) as orders,
        cast(orders_margin_unknown as bigint) as orders_margin_unknown,
        {{ money('revenue') }} as revenue,
        {{ money('revenue_source_margin') }} as revenue_source_margin,
        {{ money('gross_margin') }} as gross_margin,
        -- one row per group and offset: month_offset is a unique ordering within the group
        {{ money('sum(revenue) over (partition by cohort_month, channel, is_ad_touch, platform, account, campaign_id order by month_offset rows between unbounded preceding and current row)') }}
            as cumulative_revenue,
        {{ money('sum(gross_margin) over (partition by cohort_month, channel, is_ad_touch, platform, account, campaign_id order by month_offset rows between unbounded preceding and current row)') }}
            as cumulative_gross_margin
    from joined

)

select * from final
