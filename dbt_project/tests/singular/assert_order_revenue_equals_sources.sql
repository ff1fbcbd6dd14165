-- Revenue and order count in fct_orders equal, per order source, what staging holds up to
-- the as-of date: won non-deleted amoCRM leads, won Bitrix24 deals, non-deleted amoCRM
-- transactions and orders-file rows. No order is lost, doubled or fanned out on the way.
with

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

amocrm_leads as (

    select 'amocrm_lead' as order_source, leads.price as amount
    from {{ ref('stg_amocrm__leads') }} as leads
    cross join as_of
    where leads.status_id = {{ var('won_status_id') }}
        and not leads.is_deleted
        and cast(leads.created_at as date) <= as_of.as_of_date
        and cast(coalesce(leads.closed_at, leads.updated_at) as date) <= as_of.as_of_date

),

bitrix24_deals as (

    select 'bitrix24_deal' as order_source, deals.amount
    from {{ ref('stg_bitrix24__deals') }} as deals
    cross join as_of
    where deals.is_won
        and cast(deals.created_at as date) <= as_of.as_of_date
        and cast(coalesce(deals.closed_at, deals.updated_at) as date) <= as_of.as_of_date

),

transactions as (

    select 'amocrm_transaction' as order_source, tx.amount
    from {{ ref('stg_amocrm__transactions') }} as tx
    cross join as_of
    where not tx.is_deleted
        and cast(tx.completed_at as date) <= as_of.as_of_date

),

file_orders as (

    select 'files' as order_source, file_orders.amount
    from {{ ref('stg_files__orders') }} as file_orders
    cross join as_of
    where file_orders.order_date <= as_of.as_of_date

),

staged as (

    select order_source, sum(amount) as revenue, count(*) as orders
    from (
        select * from amocrm_leads
        union all
        select * from bitrix24_deals
        union all
        select * from transactions
        union all
        select * from file_orders
    ) as all_orders
    group by order_source

),

mart as (

    select order_source, sum(amount) as revenue, count(*) as orders
    from {{ ref('fct_orders') }}
    group by order_source

)

select
    coalesce(staged.order_source, mart.order_source) as order_source,
    staged.revenue as staged_revenue,
    mart.revenue as mart_revenue,
    staged.orders as staged_orders,
    mart.orders as mart_orders
from staged
full outer join mart
    on staged.order_source = mart.order_source
where staged.order_source is null
    or mart.order_source is null
    or abs(staged.revenue - mart.revenue) > 0.005
    or staged.orders <> mart.orders
