-- One row per customer with an order or a lead: the acquisition channel (first touch). It is
-- the channel of the customer's first lead in any CRM; a customer who never had a lead (a
-- shop buyer known only from an orders file) takes the channel of their first file order,
-- from its UTM columns through the same mapping (no UTM = `direct`).
with

first_leads as (

    select * from {{ ref('int_customer_first_lead') }}

),

file_orders as (

    select
        orders.customer_id,
        orders.order_id,
        orders.ordered_at,
        file_rows.utm_source,
        file_rows.utm_medium
    from {{ ref('int_orders') }} as orders
    inner join {{ ref('stg_files__orders') }} as file_rows
        on orders.order_id = 'files_' || file_rows.order_record_id
    where orders.order_source = 'files'

),

file_order_channels as (

    {{ select_channel('file_orders', ['customer_id', 'order_id', 'ordered_at']) }}

),

first_file_orders as (

    select
        customer_id,
        order_id,
        channel,
        row_number() over (
            partition by customer_id order by ordered_at, order_id
        ) as order_rank
    from file_order_channels

),

final as (

    select
        customer_id,
        channel,
        'lead' as first_touch,
        first_lead_id as first_touch_id
    from first_leads
    union all
    select
        first_file_orders.customer_id,
        first_file_orders.channel,
        'file_order' as first_touch,
        first_file_orders.order_id as first_touch_id
    from first_file_orders
    where first_file_orders.order_rank = 1
        and not exists (
            select 1 from first_leads
            where first_leads.customer_id = first_file_orders.customer_id
        )

)

select * from final
