-- One row per customer: a resolved person with at least one order up to the as-of date.
-- cohort_month = month of the first order; channel = first touch (int_customer_channel: the
-- first lead in any CRM, else the first file order). contact_count counts the CRM contacts
-- (amoCRM and Bitrix24) merged into the customer.
with

orders as (

    select * from {{ ref('int_orders') }}

),

first_leads as (

    select * from {{ ref('int_customer_first_lead') }}

),

channels as (

    select * from {{ ref('int_customer_channel') }}

),

resolved as (

    select customer_id, count(*) as contact_count
    from {{ ref('int_customers__resolved') }}
    where node_source in ('amocrm', 'bitrix24')
    group by customer_id

),

order_summary as (

    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) as orders_count,
        sum(amount) as revenue
    from orders
    group by customer_id

),

final as (

    select
        order_summary.customer_id,
        order_summary.first_order_date,
        {{ month_start('order_summary.first_order_date') }} as cohort_month,
        channels.channel,
        first_leads.first_lead_id,
        first_leads.first_lead_created_at,
        order_summary.orders_count,
        {{ money('order_summary.revenue') }} as revenue,
        order_summary.last_order_date,
        coalesce(resolved.contact_count, 0) as contact_count
    from order_summary
    left join first_leads
        on order_summary.customer_id = first_leads.customer_id
    left join channels
        on order_summary.customer_id = channels.customer_id
    left join resolved
        on order_summary.customer_id = resolved.customer_id

)

select * from final
