-- dim_customers RFM: among active customers a higher value never gets a lower score (and
-- equal values get equal scores): quintiles are monotone and tie-stable.
with active as (

    select customer_id, days_since_last_order, orders_count, revenue,
        recency_score, frequency_score, monetary_score
    from {{ ref('dim_customers') }}
    where is_active

)

select a.customer_id, b.customer_id as other_customer_id
from active as a
inner join active as b
    on a.customer_id <> b.customer_id
where (a.days_since_last_order < b.days_since_last_order and a.recency_score < b.recency_score)
    or (a.days_since_last_order = b.days_since_last_order and a.recency_score <> b.recency_score)
    or (a.orders_count > b.orders_count and a.frequency_score < b.frequency_score)
    or (a.orders_count = b.orders_count and a.frequency_score <> b.frequency_score)
    or (a.revenue > b.revenue and a.monetary_score < b.monetary_score)
    or (a.revenue = b.revenue and a.monetary_score <> b.monetary_score)
