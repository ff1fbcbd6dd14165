-- One row per order (won lead) up to the as-of date, numbered per customer.
-- channel = the customer's first-touch channel.
with

orders as (

    select * from {{ ref('int_orders') }}

),

first_leads as (

    select * from {{ ref('int_customer_first_lead') }}

),

final as (

    select
        orders.order_id,
        orders.lead_id,
        orders.customer_id,
        orders.order_date,
        orders.order_month,
        {{ money('orders.amount') }} as amount,
        orders.order_number,
        orders.order_number = 1 as is_first_order,
        first_leads.channel
    from orders
    left join first_leads
        on orders.customer_id = first_leads.customer_id

)

select * from final
