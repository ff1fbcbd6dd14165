{{ config(meta={'activity_window_days': var('activity_window_days')}) }}
-- One row per customer with an order up to the as-of date: activity and RFM scores.
--   days_since_last_order = as-of date - last order date;
--   is_active = the last order is at most activity_window_days old on the day after the
--     as-of date, i.e. days_since_last_order < activity_window_days: the convention of
--     fct_crr_monthly's "active at the end" of the as-of month.
-- RFM scores 1..5 rank ACTIVE customers only (null for the inactive):
--   score = least(5, 1 + floor(5 * percent_rank())), percent_rank = (rank - 1) / (n - 1)
--   (0 when n = 1), computed in integers so it is exact; rank() gives tied values the same
--   rank, so equal values always get equal scores (tie-stable, deterministic).
--   recency orders by days_since_last_order descending (the most recent get 5), frequency by
--   orders_count, monetary by revenue to date (ascending: the most get 5).
-- rfm_segment = the rfm_segments seed's name for (recency_score, frequency_score);
-- 'Churned' for inactive customers.
{% set window_days = var('activity_window_days') | int %}

with

orders as (

    select customer_id, order_date, amount from {{ ref('int_orders') }}

),

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

segments as (

    select r_score, f_score, segment from {{ ref('rfm_segments') }}

),

customer_values as (

    select
        customer_id,
        max(order_date) as last_order_date,
        count(*) as orders_count,
        {{ money('sum(amount)') }} as revenue
    from orders
    group by customer_id

),

activity as (

    select
        customer_values.*,
        cast({{ dbt.datediff('customer_values.last_order_date', 'as_of.as_of_date', 'day') }}
            as integer) as days_since_last_order
    from customer_values
    cross join as_of

),

active_ranks as (

    select
        customer_id,
        count(*) over () as active_customers,
        rank() over (order by days_since_last_order desc) as recency_rank,
        rank() over (order by orders_count) as frequency_rank,
        rank() over (order by revenue) as monetary_rank
    from activity
    where days_since_last_order < {{ window_days }}

),

scores as (

    select
        customer_id,
        {%- for dimension in ['recency', 'frequency', 'monetary'] %}
        case
            when active_customers = 1 then 1
            else least(5, 1 + cast(floor(
                cast(5 * ({{ dimension }}_rank - 1) as double precision)
                / (active_customers - 1)
            ) as integer))
        end as {{ dimension }}_score{{ ',' if not loop.last }}
        {%- endfor %}
    from active_ranks

),

final as (

    select
        activity.customer_id,
        activity.last_order_date,
        activity.orders_count,
        activity.revenue,
        activity.days_since_last_order,
        activity.days_since_last_order < {{ window_days }} as is_active,
        scores.recency_score,
        scores.frequency_score,
        scores.monetary_score,
        case
            when scores.customer_id is null then 'Churned'
            else segments.segment
        end as rfm_segment
    from activity
    left join scores
        on activity.customer_id = scores.customer_id
    left join segments
        on scores.recency_score = segments.r_score
        and scores.frequency_score = segments.f_score

)

select * from final
