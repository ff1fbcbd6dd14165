-- One row per order: a won lead (status 142 in any pipeline) closed up to the as-of date.
-- The order date is the local date of closed_at; the amount is the lead's price.
with

leads as (

    select * from {{ ref('int_leads__enriched') }}

),

as_of as (

    select * from {{ ref('int_as_of_date') }}

),

won as (

    select
        'amocrm_' || cast(leads.lead_id as varchar) as order_id,
        leads.lead_id,
        leads.account,
        leads.customer_id,
        -- a won lead always has closed_at; updated_at is a defensive fallback
        coalesce(leads.closed_at, leads.updated_at) as ordered_at,
        cast(coalesce(leads.closed_at, leads.updated_at) as date) as order_date,
        coalesce(leads.amount, 0) as amount
    from leads
    cross join as_of
    where leads.is_won
        and cast(coalesce(leads.closed_at, leads.updated_at) as date) <= as_of.as_of_date

),

numbered as (

    select
        order_id,
        lead_id,
        account,
        customer_id,
        ordered_at,
        order_date,
        {{ month_start('order_date') }} as order_month,
        amount,
        row_number() over (
            partition by customer_id order by ordered_at, lead_id
        ) as order_number
    from won

)

select * from numbered
