-- Revenue in fct_orders equals the price of every won, non-deleted lead in staging that
-- was created and closed up to the as-of date: no order is lost or fanned out on the way.
with

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

staged as (

    select coalesce(sum(leads.price), 0) as revenue, count(*) as orders
    from {{ ref('stg_amocrm__leads') }} as leads
    cross join as_of
    where leads.status_id = {{ var('won_status_id') }}
        and not leads.is_deleted
        and cast(leads.created_at as date) <= as_of.as_of_date
        and cast(coalesce(leads.closed_at, leads.updated_at) as date) <= as_of.as_of_date

),

mart as (

    select coalesce(sum(amount), 0) as revenue, count(*) as orders
    from {{ ref('fct_orders') }}

)

select staged.revenue, mart.revenue, staged.orders, mart.orders
from staged
cross join mart
where abs(staged.revenue - mart.revenue) > 0.005 or staged.orders <> mart.orders
